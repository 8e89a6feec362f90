"""Scale-out: a population's members spread over the devices of one machine or of many processes, and the launcher."""
