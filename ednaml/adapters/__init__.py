"""The Lightning side: the config as a LightningModule, a LightningDataModule and callbacks."""
