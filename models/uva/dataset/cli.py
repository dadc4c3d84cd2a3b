"""`uva dataset import | export | info`: the subparser, built here and hooked into uva.cli."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..data import DatasetError


def cmd_import(a) -> dict:
    if bool(a.bag) == bool(a.lerobot):
        raise DatasetError("dataset import needs --bag DIR [--bag DIR ...] (with --topics) or "
                           "--lerobot DIR")
    if a.lerobot:
        from .lerobot_io import import_lerobot
        return import_lerobot(a.lerobot, a.out, image_size_px=a.image_size, overwrite=a.overwrite)
    from ..topic_map import load_topic_map
    from .bag_import import import_bags
    if not a.topics:
        raise DatasetError("dataset import --bag needs --topics MAP.yaml (see docs/datasets.md)")
    return import_bags(a.bag, load_topic_map(a.topics), a.out, image_size_px=a.image_size,
                       min_steps=a.min_steps, overwrite=a.overwrite)


def cmd_export(a) -> dict:
    from .lerobot_io import export_lerobot
    return export_lerobot(a.data, a.lerobot, overwrite=a.overwrite, task=a.task)


def cmd_info(a) -> dict:
    from .info import dataset_info
    return dataset_info(a.data, sheet=a.sheet, as_json=a.json)


def add_parser(sub) -> None:
    """Add `dataset` and its verbs to the `uva` subparsers."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    d = sub.add_parser("dataset", help="import rosbag2 / LeRobot demonstrations, export, info")
    verbs = d.add_subparsers(dest="dataset_verb", required=True)
    i = verbs.add_parser("import", help="rosbag2 or LeRobotDataset v3 -> replay buffer",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="rosbag2 (mcap or sqlite3) or LeRobotDataset v3 -> a zarr "
                                     "replay buffer that `uva train` reads. docs/datasets.md "
                                     "describes the topic map and how bags are sampled.")
    i.add_argument("--bag", action="append", default=[], metavar="DIR",
                   help="a rosbag2 directory (repeat for several; one episode per bag by default)")
    i.add_argument("--topics", default=None, metavar="MAP.yaml", help="topic map (YAML or JSON)")
    i.add_argument("--lerobot", default=None, metavar="DIR", help="a LeRobotDataset v3 directory")
    i.add_argument("--out", required=True, metavar="OUT.zarr")
    i.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="centre-crop to square and area-resize to N x N (default: keep the "
                        "recorded resolution)")
    i.add_argument("--min-steps", type=int, default=16,
                   help="skip (with a warning) episodes shorter than this many steps")
    i.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    i.set_defaults(fn=cmd_import)
    e = verbs.add_parser("export", help="replay buffer -> LeRobotDataset v3")
    e.add_argument("--lerobot", required=True, metavar="OUT_DIR")
    e.add_argument("--data", required=True, metavar="IN.zarr")
    e.add_argument("--task", default=None, help="task description stored with every frame")
    e.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    e.set_defaults(fn=cmd_export)
    n = verbs.add_parser("info", help="episodes, steps, fps, cameras, dims, ranges, sources")
    n.add_argument("data", metavar="DATA", help="a replay buffer (.zarr)")
    n.add_argument("--json", action="store_true", help="print only the JSON object")
    n.add_argument("--sheet", default=None, metavar="PNG",
                   help="contact sheet path (default: DATA.sheet.png beside the dataset)")
    n.set_defaults(fn=cmd_info)
