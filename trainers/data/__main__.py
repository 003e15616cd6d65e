"""``python -m trainers.data [overrides]``: prepare the configured dataset.

Builds the TFDS dataset from the files in ``dataset.manual_dir`` once, or
says exactly what to do when they are missing.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from trainers.config import register_schemas
from trainers.data import prepare
from trainers.data.base import DatasetMissingError

register_schemas()


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        prepared = prepare(cfg.dataset)
    except DatasetMissingError as err:
        sys.exit(f"error: {err}")
    print(f"{cfg.dataset.name} is ready in {prepared.data_dir}")


if __name__ == "__main__":
    main()
