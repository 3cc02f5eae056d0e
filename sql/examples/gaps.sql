-- Where is data missing? (Real venues have downtime; hedgewatch never fills gaps.)
SELECT * FROM gaps ORDER BY missing_hours DESC LIMIT 20;
