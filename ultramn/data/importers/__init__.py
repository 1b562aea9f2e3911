"""Importers: users' own data (images, videos, DICOM) -> the dataset layout (docs/dataset.md)."""
