"""The demo training script (dsdoctor/demo/train.py), shipped so `dsdoctor demo` works after pip install."""
