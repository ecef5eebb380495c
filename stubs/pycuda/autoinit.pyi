"""Type stubs for pycuda.autoinit: importing it creates a context on device 0 (jetvox does not)."""

from pycuda.driver import Context, Device

device: Device
context: Context
