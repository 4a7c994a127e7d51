"""The version of dsdoctor (kept equal to pyproject.toml's; its own module so that modules
reporting it do not import the package facade, dsdoctor/__init__.py)."""
__version__ = "0.1.0"
