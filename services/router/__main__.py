from libs.runtime import run_service
from services.router.app import serve

run_service("router", serve)
