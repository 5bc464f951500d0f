"""Faithful local emulators of vendor APIs, served on loopback (the sandbox)."""

from backhaul.testing.emulators.base import Emulator
from backhaul.testing.emulators.base import EmulatorServer
from backhaul.testing.emulators.base import Faults
from backhaul.testing.emulators.base import FixedWindow
from backhaul.testing.emulators.base import SlidingWindow

__all__ = ["Emulator", "EmulatorServer", "Faults", "FixedWindow", "SlidingWindow"]
