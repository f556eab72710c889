"""`trail collect`: the aiohttp daemon that receives Ahoy tracking, Bayeux messages and presence."""
