"""RAFSS: retrieval-augmented few-shot segmentation (DINOv2 + SAM 2) as a DICOM service.

Importing this package opens no connection and loads no model.
"""

__version__ = "0.1.0"
