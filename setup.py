"""Package discovery: `geomjax/` as `geomjax`, and `models/` as `geomjax.models`."""

from setuptools import find_packages, setup

packages = ["geomjax"] + [f"geomjax.{p}" for p in find_packages("geomjax")]
packages += ["geomjax.models"] + [f"geomjax.models.{p}" for p in find_packages("models")]
package_dir = {"geomjax": "geomjax", "geomjax.models": "models"}

setup(packages=packages, package_dir=package_dir)
