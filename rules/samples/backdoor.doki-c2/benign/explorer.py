"""A Dogecoin balance checker (a wallet tool): explorer API calls, no name generation."""
import json, urllib.request
def balance(address):
    url = "https://dogechain.info/api/v1/address/balance/" + address
    return json.loads(urllib.request.urlopen(url).read())["balance"]
