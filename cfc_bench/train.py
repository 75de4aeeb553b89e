"""`cfc-bench train`: the Hydra application (single runs and ``-m`` multiruns)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cfc_bench.config import register_configs
from cfc_bench.data import DataError
from cfc_bench.trainer import ConfigError, train

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://cfc_bench.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one model on one task; the test metric is returned for Hydra sweepers."""
    hydra_cfg = HydraConfig.get()
    try:
        metrics = train(
            OmegaConf.to_object(cfg),
            Path(hydra_cfg.runtime.output_dir),
            experiment=hydra_cfg.runtime.choices.get("experiment"),
            config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        )
    except (DataError, ConfigError) as err:
        if hydra_cfg.mode == RunMode.RUN:  # the message says how to fix it: no traceback
            raise SystemExit(f"cfc-bench train: error: {err}") from None
        raise  # a sweep records the failure and goes on with its other jobs
    return metrics.get(f"test/{metrics['metric']}")
