from libs.runtime import run_service
from services.messenger_sender.app import serve

run_service("messenger_sender", serve)
