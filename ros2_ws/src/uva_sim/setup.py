from setuptools import setup

package_name = "uva_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="UVA team",
    maintainer_email="uva@example.org",
    description="Simulated Franka driver (pybullet) speaking franka_ros2 topics",
    license="Apache-2.0",
    entry_points={"console_scripts": ["sim_node = uva_sim.sim_node:main"]},
)
