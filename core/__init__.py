"""The base every other package may import and which imports none of them: the one
`Settings`, API tokens, signed links (invite, unsubscribe), signed impression ids and the log
format. Nothing here touches a database, a queue or the network."""
