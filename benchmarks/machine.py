"""The machine facts every benchmark prints beside its numbers (platform, versions, threads, load average)."""
import os
import platform

import torch


def machine() -> dict:
    """Platform, Python and torch versions, CPU count, torch threads, load average and the GPU if any."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
