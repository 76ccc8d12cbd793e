"""`python3 -m libs.cli …` runs bridgectl (the `bridgectl` console script), e.g. inside a pod of the
image, where no console script is installed."""

from libs.cli.main import main

if __name__ == "__main__":
    main()
