"""Every recorded episode is a dynamic partition (``<source>.<episode_id>``), crossed with the strategy."""

import dagster as dg

from lerobot_pipeline.ids import STRATEGIES

EPISODE_DIM, STRATEGY_DIM = "episode", "strategy"

episode_partitions = dg.DynamicPartitionsDefinition(name=EPISODE_DIM)
strategy_partitions = dg.StaticPartitionsDefinition(list(STRATEGIES))
episode_x_strategy = dg.MultiPartitionsDefinition({EPISODE_DIM: episode_partitions, STRATEGY_DIM: strategy_partitions})


def multi_key(episode_key: str, strategy: str) -> dg.MultiPartitionKey:
    """Build the multi key by dimension (its string form is ``episode|strategy``, sorted by dimension name)."""
    return dg.MultiPartitionKey({EPISODE_DIM: episode_key, STRATEGY_DIM: strategy})
