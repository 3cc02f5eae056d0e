"""The replay exchange: stored candles served over real HTTP in each venue's wire format."""
