from libs.runtime import run_service
from services.gateway.app import serve

run_service("gateway", serve)
