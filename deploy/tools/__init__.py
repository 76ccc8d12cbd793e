"""Operations tools that run inside a bridge pod (`kubectl exec -i … python3 - … < tool.py`)."""
