"""The segmentation algorithm: numpy and torch only; no database, no DICOM networking.

Heavy modules (torch, sam2, transformers) are imported lazily by the modules that need them.
"""
