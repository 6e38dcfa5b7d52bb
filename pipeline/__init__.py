"""Kaggle image-competition pipeline: fetch → dataset → train → predict → submission."""

__version__ = "0.3.1"
