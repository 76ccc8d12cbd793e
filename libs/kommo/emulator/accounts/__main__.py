"""`python -m libs.kommo.emulator.accounts --port N [--client-id … --redirect-uri …] [--domain …]`"""

from libs.kommo.emulator.accounts.app import main

main()
