"""`python -m libs.kommo.emulator --port N --channel-id … --channel-secret … --hook-url …`"""

from libs.kommo.emulator.app import main

main()
