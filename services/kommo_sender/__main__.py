from libs.runtime import run_service
from services.kommo_sender.app import serve

run_service("kommo_sender", serve)
