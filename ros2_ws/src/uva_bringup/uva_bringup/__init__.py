"""Launch files, parameter YAML and a launch_ros-free runner for the UVA graph."""
