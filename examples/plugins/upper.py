class UpperPlugin:
    name = "upper"
    version = "1.0.0"

    def process(self, input_data):
        return input_data.upper()
