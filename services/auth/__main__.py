from libs.runtime import run_service
from services.auth.app import serve

run_service("auth", serve)
