"""ΛΞVON sample app: the stand-in target app that aevon-deploy's dev environment deploys."""
