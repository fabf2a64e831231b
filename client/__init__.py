"""oaio.client — the OaioClient library: offline-first sync of oai objects with an oaio server."""
