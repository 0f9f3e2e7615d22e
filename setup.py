"""Install with colcon (ROS 2, ament_python) or with pip (`pip install -e .[cpu,test]`) on machines without ROS."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dbp_control"
HERE = Path(__file__).parent


def share(folder: str) -> list[tuple[str, list[str]]]:
    """Every file under `folder`, installed to share/dbp_control/<folder> with its subfolders."""
    folders = [HERE / folder, *sorted(p for p in (HERE / folder).rglob("*") if p.is_dir())]
    return [(f"share/{PACKAGE}/{d.relative_to(HERE)}", sorted(str(f.relative_to(HERE)) for f in d.iterdir() if f.is_file()))
            for d in folders]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Real-time dual-arm control with one-step Drift-Based Policies, as ROS 2 nodes",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share("launch"),
        *share("config"),
        *share("calibration"),
        *share("models"),
    ],
    # torch is installed first, pinned, by the Makefile (a plain `torch` would pull a multi-GB CUDA build)
    install_requires=[
        "numpy", "torch>=2.3", "tqdm", "pyyaml", "matplotlib", "rosbags>=0.11",
        "mujoco==3.3.0",  # the version robosuite, gymnasium-robotics and metaworld accept (4.0 breaks them)
        "gymnasium>=1.0",
        "zarr>=3.1,<4",  # training datasets
        "eclipse-zenoh>=1.5,<2",  # the middleware backend on machines without ROS 2
        "onnx>=1.16",  # dbp export (ONNX Runtime itself comes with the cpu or robot extra)
    ],
    extras_require={
        "cpu": ["onnxruntime"],  # never together with onnxruntime-gpu: they share the module name
        "robot": ["onnxruntime-gpu", "pyrealsense2"],
        "realsense": ["pyrealsense2"],  # needs libusb-1.0-0 (apt) to import
        # zenoh-ros2-sdk: an independent rmw_zenoh implementation the Zenoh backend is checked against (pinned:
        # the test uses its registry and its own key expressions)
        "test": ["pytest", "pytest-timeout", "colcon-core", "colcon-ros", "colcon-python-setup-py", "zenoh-ros2-sdk==0.1.8"],
        "metaworld": ["metaworld==3.1.1"],  # a second benchmark family; pins mujoco 3.3.0 like this package
    },
    entry_points={"console_scripts": [
        "dbp = dbp_control.cli.main:main",
        # the graph's nodes, named as config/graph.yaml and the launch files name them
        *(f"{node} = dbp_control.nodes.entry:main" for node in ("sim_robot", "policy", "dual_arm_command", "recorder", "camera")),
    ]},
    zip_safe=True,
)
