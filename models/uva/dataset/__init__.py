"""Bring your own demonstrations: rosbag2 and LeRobotDataset import/export and dataset info
(`uva dataset ...`). Each module holds one concern: bag_import, lerobot_io, info, cli."""
