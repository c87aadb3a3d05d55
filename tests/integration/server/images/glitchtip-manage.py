#!/usr/bin/env python3
"""manage.py of the glitchtip STAND-IN image: forwards to glitchtip_standin.manage."""
import os
import sys

os.chdir("/code")
os.execvp(sys.executable, [sys.executable, "-m", "glitchtip_standin.manage", *sys.argv[1:]])
