"""The technician's console: a command line over the supervisor's OPC UA server."""
