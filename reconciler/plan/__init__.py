"""Pure planning: desired instances × record → actions. Also the shared state vocabulary."""
