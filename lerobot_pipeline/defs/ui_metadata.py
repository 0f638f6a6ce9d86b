"""What the Dagster UI shows for an episode or a dataset: tables, a plot and camera thumbnails.

Plain helpers returning ``dg.MetadataValue``s; images are small PNGs embedded as markdown data URIs.
"""

from __future__ import annotations

import base64
import io

import cv2
import dagster as dg
import numpy as np

from lerobot_pipeline.core.camera_videos import decode_jpeg
from lerobot_pipeline.core.episode_writer import PartData, StagedPart
from lerobot_pipeline.core.raw import RawEpisode
from lerobot_pipeline.core.report import PartReport

THUMB_HEIGHT = 72


def _png_markdown(title: str, png: bytes) -> str:
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def joint_plot(part: PartData, raw: RawEpisode, fps: int) -> str:
    """Markdown with a PNG: first joint of every arm (raw samples) against the aligned frames.

    Drawn on a bare ``Figure`` with fixed margins: no pyplot state, and no ``tight_layout`` pass, which cost
    a quarter of the plot's time (it is drawn once per episode, in the conversion step's main thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t0 = part.capture_t_ns[0]
    fig = Figure(figsize=(6, 2.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for arm in raw.arms:
        sel = (arm.t_ns >= t0) & (arm.t_ns <= part.capture_t_ns[-1])
        ax.plot((arm.t_ns[sel] - t0) / 1e9, arm.values[sel, 0], lw=0.8, alpha=0.6, label=f"{arm.name} (raw)")
    ft = (part.capture_t_ns - t0) / 1e9
    ax.plot(ft, part.arrays.state_slave[:, 0], "k.", ms=2.5, label="aligned slave[0]")
    ax.set_xlabel("time from first frame (s)")
    ax.set_ylabel("joint1")
    ax.legend(fontsize=6, loc="upper right", ncol=2)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.18, top=0.96)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _png_markdown("joint1 of every arm: raw samples and the aligned frames", buf.getvalue())


def thumbnail_strip(part: PartData, raw: RawEpisode) -> str:
    """Markdown with a PNG: first, middle and last frame of every camera, one row per camera."""
    rows = []
    n = len(part.capture_t_ns)
    for cam, idx in part.camera_frames.items():
        frames = raw.cameras.get(cam)
        tiles = []
        for k in (0, n // 2, n - 1):
            i = int(idx[k])
            img = (decode_jpeg(frames.path(i), raw.ref.key) if frames is not None and i >= 0
                   else np.zeros((64, 64, 3), np.uint8))
            w = max(1, round(img.shape[1] * THUMB_HEIGHT / img.shape[0]))
            tiles.append(cv2.resize(img, (w, THUMB_HEIGHT), interpolation=cv2.INTER_AREA))
        rows.append(np.hstack(tiles))
    width = max(r.shape[1] for r in rows)
    strip = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    ok, png = cv2.imencode(".png", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    return _png_markdown(f"cameras {', '.join(part.camera_frames)} (rows) at first / middle / last frame",
                         png.tobytes())


def error_table(report: PartReport) -> dg.TableMetadataValue:
    rows = []
    for kind, errs in (("camera", report.camera_error_ms), ("arm", report.arm_error_ms)):
        for name, e in errs.items():
            rows.append(dg.TableRecord({
                "kind": kind, "name": name,
                "mean_ms": e.mean_ms if e else float("nan"), "p95_ms": e.p95_ms if e else float("nan"),
                "max_ms": e.max_ms if e else float("nan"),
                "utilisation": report.utilisation.get(name, float("nan")),
                "frames_without_partner": report.filled_by.get(name, 0),
            }))
    return dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=[
        dg.TableColumn("kind", "string"), dg.TableColumn("name", "string"), dg.TableColumn("mean_ms", "float"),
        dg.TableColumn("p95_ms", "float"), dg.TableColumn("max_ms", "float"), dg.TableColumn("utilisation", "float"),
        dg.TableColumn("frames_without_partner", "int"),
    ]))


def episode_metadata(parts: list[StagedPart]) -> dict:
    r0 = parts[0].report
    frames = sum(p.length for p in parts)
    return {
        "frames": frames,
        "duration_s": round(frames / r0.fps, 2),
        "fps": r0.fps,
        "parts": len(parts),
        "frames_in": r0.frames_in,
        "trimmed_start_end": f"{r0.trimmed_start} + {r0.trimmed_end}",
        "filled_frames": sum(len(p.report.filled_frames) for p in parts),
        "dropped_at_gaps": r0.dropped_gaps,
        "dropped_short_pieces": r0.dropped_short,
        "long_gaps": r0.long_gaps,
        "bad_images": r0.bad_image_count,
        "padded_frames": sum(p.report.padded_frames for p in parts),
        "utilisation": dg.MetadataValue.float(r0.utilisation_total),
        "alignment_error": error_table(r0),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in (r0.notes + r0.warnings)) or "none"),
        "output": dg.MetadataValue.path(str(parts[0].dir.parent)),
        "config_digest": r0.config_digest,
    }


def dataset_table(provenance: list[dict]) -> dg.TableMetadataValue:
    cols = ["episode_index", "episode_key", "part", "length", "filled_frames", "utilisation", "version"]
    types = {"episode_index": "int", "part": "int", "length": "int", "filled_frames": "int", "utilisation": "float"}
    return dg.MetadataValue.table(
        [dg.TableRecord({c: row[c] for c in cols}) for row in provenance[:500]],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "string")) for c in cols]),
    )
