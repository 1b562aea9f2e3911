"""UltraMN: plane recognition and median-nerve segmentation in ultrasound video."""

__version__ = "0.1.0"
