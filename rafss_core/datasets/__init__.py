"""Research data formats: NIfTI volumes and nnU-Net-style datasets (not DICOM)."""
