"""Move a registry alias: copy one alias's version to another, or point it at a version.

python -m scripts.promote --from-alias staging --to-alias Production
python -m scripts.promote --version 3 --to-alias staging
"""

from __future__ import annotations

import argparse
import os

import mlflow

from model_wrapper.publish import DEFAULT_MODEL_NAME, promote, set_alias
from scripts.train import DEFAULT_TRACKING_URI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registered-model-name", default=DEFAULT_MODEL_NAME)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from-alias", default="staging")
    source.add_argument("--version")
    parser.add_argument("--to-alias", default="Production")
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
    if args.version:
        set_alias(args.registered_model_name, args.to_alias, args.version)
        version = args.version
    else:
        version = promote(args.registered_model_name, args.from_alias, args.to_alias)
    print(f"{args.registered_model_name}@{args.to_alias} -> version {version}")


if __name__ == "__main__":
    main()
