from setuptools import setup

package_name = "uva_policy"

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
    description="UVA policy and video nodes: thin ROS 2 adapters over the uva core",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = uva_policy.policy_node:main",
            "video_node = uva_policy.video_node:main",
        ],
    },
)
