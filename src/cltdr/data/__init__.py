"""Data: annotation files, feature files, the seconds <-> grid conversion, datasets and the synthetic benchmark."""
