"""The functions' versions as the dispatcher runs them (registry) and their destinations' config. Imports
`core` and `analytics` only."""
