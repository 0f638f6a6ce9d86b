"""Which episodes go into which size-bounded file, and which existing files can stay as they are.

Pure arithmetic, shared by data parquet files and every camera's mp4 files. Episodes ``0..keep-1``
are unchanged since the previous build (same part, index and row offset); files holding only those
are hard-linked. The last such file is the open one: new episodes are appended to it (it is
rewritten, old packets/rows copied, never re-encoded) until the size bound is reached, then a new
file starts. If the open file also held episodes that are gone or changed, only its leading kept
episodes are copied before the new ones follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot_pipeline.core.v30.layout import FIRST_FILE, FileId


@dataclass(frozen=True)
class OldFile:
    bytes: int
    episodes: int  # how many episodes it held in the previous build


@dataclass
class FilePlan:
    fid: FileId
    link: bool = False  # unchanged: hard-link the previous file
    old_units: int = 0  # leading rows/frames copied from the previous file with this id
    new: list[int] = field(default_factory=list)  # episodes appended from their staged parts

    @property
    def empty(self) -> bool:
        return not (self.link or self.old_units or self.new)


def plan_files(
    prev_locs: list[FileId], lengths: list[int], keep: int, old_files: dict[FileId, OldFile],
    new_bytes: list[int], bound_bytes: int, chunks_size: int,
) -> tuple[list[FilePlan], list[FileId]]:
    """(file plans in order, file of every episode) for ``len(lengths)`` episodes.

    ``prev_locs[i]`` is episode i's file in the previous build (only ``i < keep`` are used);
    ``new_bytes`` the sizes of episodes ``keep..``; a file rolls over when adding one more episode
    would reach ``bound_bytes`` (a single episode larger than the bound gets a file of its own).
    """
    plans: list[FilePlan] = []
    locs = list(prev_locs[:keep])
    cur: FilePlan | None = None
    cur_bytes = 0
    if keep:
        last = prev_locs[keep - 1]
        for fid in sorted(set(locs) - {last}):
            plans.append(FilePlan(fid, link=True))
        kept_here = [i for i in range(keep) if prev_locs[i] == last]
        old = old_files[last]
        if old.episodes == len(kept_here):
            cur = FilePlan(last, link=True)
            cur_bytes = old.bytes
        else:  # it also held episodes that changed or left: keep its leading kept episodes only
            cur = FilePlan(last, old_units=sum(lengths[i] for i in kept_here))
            cur_bytes = old.bytes * len(kept_here) // max(old.episodes, 1)
    for i, size in zip(range(keep, len(lengths)), new_bytes):
        if cur is None:
            cur = FilePlan(FIRST_FILE)
        elif not cur.empty and cur_bytes + size >= bound_bytes:
            plans.append(cur)
            cur, cur_bytes = FilePlan(cur.fid.next(chunks_size)), 0
        if cur.link:  # appending to an unchanged file: rewrite it, its packets/rows copied as they are
            cur.link = False
            cur.old_units = sum(lengths[j] for j in range(keep) if locs[j] == cur.fid)
        cur.new.append(i)
        cur_bytes += size
        locs.append(cur.fid)
    if cur is not None:
        plans.append(cur)
    return plans, locs
