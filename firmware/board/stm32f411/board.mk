board:
	@echo board port not written yet
