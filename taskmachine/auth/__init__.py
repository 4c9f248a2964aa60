"""Who is calling and what they may do: tokens, principals, roles and permission keys."""
