"""Dagster definitions: a thin layer over ``lerobot_pipeline.core``. One concept per module."""

import warnings

import dagster as dg

# Partitioned asset checks, observable source assets and the multi→single partition mapping are
# beta/preview in Dagster 1.13; we rely on them knowingly (see README), so say it once, here.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
