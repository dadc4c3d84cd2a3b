"""ROS 2 adapters over the `uva` core: policy_node and video_node."""
