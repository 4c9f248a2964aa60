"""GraphQL object types by domain; modules depend on each other in one direction only:
people → fleet → agents → work → runs → talk."""
