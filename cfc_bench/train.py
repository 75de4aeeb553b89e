"""`cfc-bench train`: the Hydra application (single runs and ``-m`` multiruns)."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cfc_bench.config import register_configs
from cfc_bench.trainer import train

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://cfc_bench.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one model on one task; the test metric is returned for Hydra sweepers."""
    hydra_cfg = HydraConfig.get()
    metrics = train(
        OmegaConf.to_object(cfg),
        Path(hydra_cfg.runtime.output_dir),
        experiment=hydra_cfg.runtime.choices.get("experiment"),
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
    )
    return metrics.get(f"test/{metrics['metric']}")
