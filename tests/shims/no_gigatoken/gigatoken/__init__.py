"""Put first on PYTHONPATH, this makes `import gigatoken` fail as it does where gigatoken is not installed."""
raise ModuleNotFoundError("No module named 'gigatoken'", name='gigatoken')
