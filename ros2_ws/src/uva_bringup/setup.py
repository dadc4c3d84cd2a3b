from glob import glob

from setuptools import setup

package_name = "uva_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/rviz", glob("rviz/*.rviz")),
        # the shipped checkpoints (a link to models/checkpoints): the nodes' default checkpoint
        *[("share/" + package_name + "/" + d, glob(d + "/*")) for d in glob("checkpoints/*")],
    ],
    install_requires=["setuptools"],
    entry_points={"console_scripts": [
        "demo_recorder = uva_bringup.demo_recorder:main",
        "sim_teleop = uva_bringup.sim_teleop:main",
    ]},
    zip_safe=True,
    maintainer="UVA team",
    maintainer_email="uva@example.org",
    description="Launch files and parameters wiring the UVA nodes to a Franka (real or simulated)",
    license="Apache-2.0",
)
