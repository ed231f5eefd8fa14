"""Images: formats and their names, decoding inputs under the contract's rules, encoding."""
