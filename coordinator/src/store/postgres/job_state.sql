SELECT state FROM jobs WHERE id = $1
